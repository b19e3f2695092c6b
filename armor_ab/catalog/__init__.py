"""The demo product catalog: products with specs and control copy, and their procedurally drawn pictures."""

from .draw import CATEGORIES, draw_picture, draw_product
from .products import Product, build_products, load_catalog, product_picture

__all__ = [
    "CATEGORIES",
    "Product",
    "build_products",
    "draw_picture",
    "draw_product",
    "load_catalog",
    "product_picture",
]
