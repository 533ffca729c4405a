"""Returns and exchanges: return authorisations for orders of any channel, received at any
location that accepts returns, refunded to the original payment or as store credit."""
