"""``python -m urep.data.phantoms OUT_DIR``: write the phantom sample grids (see `urep.data.phantoms.grid`)."""

from urep.data.phantoms.grid import main

raise SystemExit(main())
