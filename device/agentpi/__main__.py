from agentpi.cli import main

raise SystemExit(main())
