"""tinyjax: training dynamics of tiny language models, many runs at a time."""
