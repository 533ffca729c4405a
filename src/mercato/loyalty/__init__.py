"""Loyalty across channels: points earned on any purchase, redeemable in any channel, tiers."""
