module github.com/seed351623e9/presence/examples/broker

go 1.24

require (
	github.com/prometheus/client_golang v1.22.0
	github.com/redis/go-redis/v9 v9.17.3
	github.com/seed351623e9/presence v0.1.0
	github.com/seed351623e9/presence/presenceprom v0.1.0
	github.com/seed351623e9/presence/presenceredis v0.1.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dgryski/go-rendezvous v0.0.0-20200823014737-9f7001d12a5f // indirect
	github.com/kylelemons/godebug v1.1.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/client_model v0.6.1 // indirect
	github.com/prometheus/common v0.62.0 // indirect
	github.com/prometheus/procfs v0.15.1 // indirect
	github.com/puzpuzpuz/xsync/v3 v3.5.1 // indirect
	golang.org/x/sys v0.30.0 // indirect
	google.golang.org/protobuf v1.36.5 // indirect
)

// Local development: build against this checkout. The workspace (go.work)
// does the same; see the README's Release section for why both.
replace (
	github.com/seed351623e9/presence => ../..
	github.com/seed351623e9/presence/presenceprom => ../../presenceprom
	github.com/seed351623e9/presence/presenceredis => ../../presenceredis
)
