from alertd.cli.main import run

run()
