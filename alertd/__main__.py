from alertd.cli import run

run()
