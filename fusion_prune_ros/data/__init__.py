"""nuScenes access through the official devkit, the generated nuScenes-format data set, and model inputs."""
