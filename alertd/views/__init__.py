"""What people read: tables for the terminal, status screens, number formatting."""
