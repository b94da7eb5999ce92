"""What a comparison becomes: plotly figures, the HTML report and the exported files."""
