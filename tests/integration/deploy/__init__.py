"""Installing and running sipsock the way a server does: wheel, systemd, state directory."""
