from sdt_build.cli import main

main()
