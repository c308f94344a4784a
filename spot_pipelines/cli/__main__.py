"""`python -m spot_pipelines.cli` (how the demo runs the operator commands)."""

from spot_pipelines.cli import main

main()
