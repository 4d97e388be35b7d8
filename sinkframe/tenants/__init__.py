"""Tenants: one schema and one read-only login role per customer, from the same specs.

    from sinkframe.tenants.registry import known_tenants, schema_for
    known_tenants(conn)          # {"acme": "tenant_acme", ...}: the registered tenants
    apply_tenant(conn, spec, "acme", retention="90 days")   # idempotent `tenants add`
    remove_tenant(conn, "acme", drop_data=False)

- registry.py: names (`[a-z][a-z0-9_]{0,40}`), schema_for / role_for, the table
  public.sinkframe_tenants and its readers;
- provision.py: plan and apply a tenant (its objects through the schema module,
  with the search path set to the tenant's schema), and keep registered tenants
  in step on `schema plan|apply`;
- access.py: the role, its grants and the isolation check;
- remove.py, listing.py: `tenants remove` and `tenants list`.
"""
from sinkframe.tenants.provision import TenantPlan, apply_tenant, plan_tenant
from sinkframe.tenants.registry import Tenant, check_name, known_tenants, load_tenants, role_for, schema_for
from sinkframe.tenants.remove import plan_removal, remove_tenant

__all__ = ["Tenant", "TenantPlan", "apply_tenant", "check_name", "known_tenants", "load_tenants",
           "plan_removal", "plan_tenant", "remove_tenant", "role_for", "schema_for"]
