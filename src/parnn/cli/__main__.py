from parnn.cli import main

main()
