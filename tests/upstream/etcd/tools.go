//go:build tools

// Package etcd only records, for go mod tidy, the main package that
// scripts/build-upstream builds from this module; it is never compiled.
package etcd

import (
	_ "go.etcd.io/etcd/server/v3"
)
