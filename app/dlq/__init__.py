"""The dead-letter topic's tools (`flask dlq`): reading it to its end, counting and showing its
dead letters once per source record, and replaying them. No Flask in here: app/cli/dlq.py is the
command line around it."""
