from structbert_triton.cli import main

raise SystemExit(main())
