"""Use cases that span domains, each step beside its compensation.

A domain owns its tables and the use cases that change only them (``<domain>/service.py``);
a flow is the one place where a use case calls several domains: checkout (carts, stock,
promotions, orders, payments), cancellation (orders, fulfilment, stock, promotions,
payments), capture as goods leave, staff and imported orders, returns settlement.
Domains never import flows; routers, commands and the worker call a flow or one domain
service. A flow that calls an outside service (a payment provider) runs short transactions
of its own around the call, never one across it: state first (committed), then money, and
on failure the compensation that puts the state back.
"""
