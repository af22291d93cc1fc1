from wmtp_cli.cli.app import main

main()
