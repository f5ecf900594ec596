from onnxgate.cli import main

raise SystemExit(main())
