"""The experimentation platform: experiments, flags, assignment and events over HTTP."""
