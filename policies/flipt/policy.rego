# Role-based access control for Flipt v1 (`authorization.backend: local`).
#
# Behaviour follows Flipt's v1 RBAC test policy: deny by default; a request is allowed only
# when the caller authenticated with a JWT and one of the rules of the caller's role
# (`data.roles`, matched by the `io.flipt.auth.role` metadata) covers the request's resource,
# action and namespace. Evaluated by wasmgate as Wasm (`opa build -t wasm`, see
# scripts/build-policies.sh) or interpreted by regorus; both must give the same answers.
#
# Input (one per Flipt request, built by the authz middleware):
#   {"request": {"namespace"?, "resource", "subject", "action", "status"},
#    "authentication": {"method": <number, 5 = JWT>, "metadata": {"io.flipt.auth.role": ...}}}
package flipt.authz.v1

import rego.v1

default allow := false

allow if {
	flipt.is_auth_method(input, "jwt")
	some rule in role_rules
	resource_matches(rule, input.request.resource)
	action_matches(rule, input.request.action)
	namespace_matches(rule, input.request)
}

# The namespaces the caller may see in ListNamespaces: exactly the namespaces N for which
# `allow` would hold for {resource: "namespace", action: "read", namespace: N}. So the rules
# that count are the caller's rules for resource "namespace" (or "*") with action "read" (or
# "*"); each contributes its namespace, and a rule without a namespace, or with "*",
# contributes "*", meaning every namespace.
#
# Consumers must read "*" as "no filtering" (as Flipt v2's handler does); Flipt v1's
# ListNamespaces handler would keep only a namespace literally named "*". A caller who is not
# JWT-authenticated, or whose role is unknown, gets the empty set. The rule is a partial set,
# so it is never undefined.
viewable_namespaces contains namespace if {
	flipt.is_auth_method(input, "jwt")
	some rule in role_rules
	resource_matches(rule, "namespace")
	action_matches(rule, "read")
	namespace := rule_namespace(rule)
}

# Every rule of every role whose name is the caller's role, flattened into one set.
role_rules contains rule if {
	some role in data.roles
	role.name == input.authentication.metadata["io.flipt.auth.role"]
	some rule in role.rules
}

resource_matches(rule, _) if rule.resource == "*"

resource_matches(rule, resource) if rule.resource == resource

action_matches(rule, _) if "*" in rule.actions

action_matches(rule, action) if action in rule.actions

# A rule without a namespace applies in every namespace, including requests that carry none
# (ListNamespaces). A rule naming a namespace never matches a request without one.
namespace_matches(rule, _) if not rule.namespace

namespace_matches(rule, _) if rule.namespace == "*"

namespace_matches(rule, request) if rule.namespace == request.namespace

rule_namespace(rule) := "*" if not rule.namespace

rule_namespace(rule) := rule.namespace if rule.namespace
