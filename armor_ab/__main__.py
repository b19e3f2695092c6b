from armor_ab.cli import app

app(prog_name="armor-ab")
