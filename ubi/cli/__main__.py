from ubi.cli.main import main

raise SystemExit(main())
