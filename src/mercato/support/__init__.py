"""Customer support: one case history per customer, whatever channel it arrived on."""
