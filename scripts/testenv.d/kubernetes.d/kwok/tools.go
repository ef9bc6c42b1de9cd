//go:build tools

// Package tools pins the kwok commands the test environment builds, so that
// `go mod tidy` keeps every module they need in go.sum.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
