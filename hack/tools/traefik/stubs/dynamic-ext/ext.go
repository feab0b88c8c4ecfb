// Package ext stands in for Traefik's nested module github.com/traefik/traefik/dynamic/ext.
//
// Traefik's go.mod replaces that module with a directory of its repository, which the module zip on
// the Go module proxy leaves out (a nested module is never part of its parent's zip) and which the
// proxy does not serve on its own. Traefik embeds its two types in its dynamic configuration as
// extension points that are empty in the open-source build; these are the same empty types.
package ext

// HTTP extends Traefik's dynamic HTTP configuration (nothing in the open-source build).
type HTTP struct{}

// Router extends Traefik's HTTP router (nothing in the open-source build).
type Router struct{}
