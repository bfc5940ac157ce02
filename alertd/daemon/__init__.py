"""The running daemon: lifecycle, evaluation of accounts against the rules, the state file,
health, the local HTTP endpoint and systemd notifications."""
