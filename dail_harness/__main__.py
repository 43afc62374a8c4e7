from dail_harness.cli import main

main()
