// Package releasetest holds tests of how this repository is released, in a
// module of its own so that the presence module does not depend on
// golang.org/x/mod:
//
//   - every module of the repository is in the workspace (go.work), so the
//     README's one test command covers it;
//   - the nested modules install from a module proxy at the version they
//     require of presence, in a fresh module with no replace directive,
//     as a user outside this repository would install them.
package releasetest
