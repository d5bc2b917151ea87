from fastserve.cli import main

raise SystemExit(main())
