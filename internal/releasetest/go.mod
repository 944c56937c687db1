module github.com/seed351623e9/presence/internal/releasetest

go 1.24

require golang.org/x/mod v0.27.0
