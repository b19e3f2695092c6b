"""The browser side: the armor-ab.js snippet, the events beacon, and an example catalog site."""
