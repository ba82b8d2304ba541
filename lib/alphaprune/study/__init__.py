"""Many runs: the shared run store and method × seed studies."""
