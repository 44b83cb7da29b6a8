"""A small social network whose data lives on actively replicated replica managers."""
