"""Into the guest: `lab shell` (a root shell or one command in the guest a run boots)
and `lab exec` (the user's own program run as one test, with the lab's verdicts)."""
