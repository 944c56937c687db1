module github.com/seed351623e9/presence/presenceredis

go 1.24

require (
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/redis/go-redis/v9 v9.17.3
	github.com/seed351623e9/presence v0.1.0
	github.com/stretchr/testify v1.11.1
)

require (
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/dgryski/go-rendezvous v0.0.0-20200823014737-9f7001d12a5f // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	github.com/puzpuzpuz/xsync/v3 v3.5.1 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

// Local development: build against this checkout. Go ignores a replace
// outside the main module, so users get the required version; see the
// README's Release section for why go.work alone is not enough.
replace github.com/seed351623e9/presence => ../
