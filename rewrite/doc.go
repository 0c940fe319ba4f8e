// Package rewrite injects policy fragments into SELECT statements so that
// every reference to a protected table yields only permitted rows, and
// refuses statements it cannot make safe.
package rewrite
