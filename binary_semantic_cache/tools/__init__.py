"""Tools around the library (bench, demo, eval): the library itself never imports them."""
