from iotcollector.cli import main

raise SystemExit(main())
