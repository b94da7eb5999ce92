"""Data in: safe unzipping, the one image loader, dataset layouts and what reading them found."""
