from agentpi.cli.main import main

raise SystemExit(main())
