;; A minimal proxy-wasm 0.2.1 guest, hand-written so the host's ABI plumbing
;; can be tested without any SDK: every callback calls a few host functions
;; and leaves traces (logs, headers, shared data, metrics) the test checks.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue_stream (param i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick_period (param i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_call" (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)
  ;; Return slots: 0 data pointer, 4 data length, 8 CAS, 16 call token, 24 time (u64),
  ;; 32 id of probe.requests, 36 id of probe.ticks.
  (global $heap (mut i32) (i32.const 8192))

  (data (i32.const 256) ":path")
  (data (i32.const 272) "source\00address")
  (data (i32.const 288) "no\00such")
  (data (i32.const 304) "last_path")
  (data (i32.const 320) "x-probe")
  (data (i32.const 328) "seen")
  (data (i32.const 336) "blocked")
  (data (i32.const 344) "scorer")
  (data (i32.const 352) "hello")
  (data (i32.const 360) "probe.requests")
  (data (i32.const 376) "probe.ticks")
  (data (i32.const 392) "bad configuration: field x")
  (data (i32.const 424) "x-call-body")
  (data (i32.const 440) "call failed")
  (data (i32.const 456) "x-probe-response")
  (data (i32.const 472) "1")
  (data (i32.const 480) "cas mismatch")
  (data (i32.const 496) "time read")
  (data (i32.const 600) "bad pointer refused")
  (data (i32.const 624) "bad map refused")
  (data (i32.const 640) "probe panicked: on purpose\n")
  ;; iovec for fd_write: {ptr 640, len 27}
  (data (i32.const 672) "\80\02\00\00\1b\00\00\00")
  ;; Header map {":method": "POST", ":path": "/v1/score", ":authority": "scorer"}, 75 bytes.
  (data (i32.const 512)
    "\03\00\00\00"
    "\07\00\00\00\04\00\00\00" "\05\00\00\00\09\00\00\00" "\0a\00\00\00\06\00\00\00"
    ":method\00POST\00:path\00/v1/score\00:authority\00scorer\00")

  ;; Bump allocator: memory handed to the guest is never freed (tests are short).
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $ptr) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.get $ptr))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))

  ;; Accepts any configuration except one starting with "x"; logs what it got.
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (drop (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4)))
    (if (i32.eq (i32.load8_u (i32.load (i32.const 0))) (i32.const 120))
      (then
        (drop (call $log (i32.const 4) (i32.const 392) (i32.const 26)))
        (return (i32.const 0))))
    (drop (call $log (i32.const 2) (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (drop (call $define_metric (i32.const 0) (i32.const 360) (i32.const 14) (i32.const 32)))
    (drop (call $define_metric (i32.const 0) (i32.const 376) (i32.const 11) (i32.const 36)))
    (drop (call $set_tick_period (i32.const 1000)))
    (i32.const 1))

  (func (export "proxy_on_tick") (param i32)
    (drop (call $increment_metric (i32.load (i32.const 36)) (i64.const 1))))

  ;; Logs :path and source.address, stores the path in shared data, tags the
  ;; request; "/b..." is answered 403, "/c..." calls the scorer, "/s..." tries
  ;; a stale CAS, "/t..." reads the clock, "/g..." calls an unhosted import,
  ;; "/u..." traps, "/w..." writes a panic message to stderr and traps, "/p..." logs from a bad pointer, "/h..." sends a truncated map.
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $path i32) (local $path_len i32) (local $first i32)
    (drop (call $increment_metric (i32.load (i32.const 32)) (i64.const 1)))
    (drop (call $get_header (i32.const 0) (i32.const 256) (i32.const 5) (i32.const 0) (i32.const 4)))
    (local.set $path (i32.load (i32.const 0)))
    (local.set $path_len (i32.load (i32.const 4)))
    (drop (call $log (i32.const 2) (local.get $path) (local.get $path_len)))
    (drop (call $get_property (i32.const 272) (i32.const 14) (i32.const 0) (i32.const 4)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (drop (call $get_property (i32.const 288) (i32.const 7) (i32.const 0) (i32.const 4)))
    (drop (call $set_shared (i32.const 304) (i32.const 9) (local.get $path) (local.get $path_len) (i32.const 0)))
    (drop (call $add_header (i32.const 0) (i32.const 320) (i32.const 7) (i32.const 328) (i32.const 4)))
    (local.set $first (i32.load8_u (i32.add (local.get $path) (i32.const 1))))
    (if (i32.eq (local.get $first) (i32.const 98)) ;; 'b'
      (then
        (drop (call $local_response (i32.const 403) (i32.const 0) (i32.const 0)
          (i32.const 336) (i32.const 7) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (if (i32.eq (local.get $first) (i32.const 99)) ;; 'c'
      (then
        (drop (call $http_call (i32.const 344) (i32.const 6) (i32.const 512) (i32.const 75)
          (i32.const 352) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 16)))
        (return (i32.const 1))))
    (if (i32.eq (local.get $first) (i32.const 115)) ;; 's'
      (then
        (drop (call $get_shared (i32.const 304) (i32.const 9) (i32.const 0) (i32.const 4) (i32.const 8)))
        (if (i32.eq (i32.const 8)
              (call $set_shared (i32.const 304) (i32.const 9) (i32.const 352) (i32.const 5)
                (i32.add (i32.load (i32.const 8)) (i32.const 1000))))
          (then (drop (call $log (i32.const 3) (i32.const 480) (i32.const 12)))))))
    (if (i32.eq (local.get $first) (i32.const 116)) ;; 't'
      (then
        (drop (call $now (i32.const 24)))
        (drop (call $set_shared (i32.const 496) (i32.const 9) (i32.const 24) (i32.const 8) (i32.const 0)))))
    (if (i32.eq (local.get $first) (i32.const 112)) ;; 'p'
      (then
        (if (i32.eq (i32.const 6) (call $log (i32.const 2) (i32.const -16) (i32.const 100)))
          (then (drop (call $log (i32.const 3) (i32.const 600) (i32.const 19)))))))
    (if (i32.eq (local.get $first) (i32.const 104)) ;; 'h'
      (then
        (if (i32.eq (i32.const 3)
              (call $http_call (i32.const 344) (i32.const 6) (i32.const 512) (i32.const 30)
                (i32.const 352) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 16)))
          (then (drop (call $log (i32.const 3) (i32.const 624) (i32.const 15)))))))
    (if (i32.eq (local.get $first) (i32.const 117)) ;; 'u'
      (then (unreachable)))
    (if (i32.eq (local.get $first) (i32.const 119)) ;; 'w'
      (then
        (drop (call $fd_write (i32.const 2) (i32.const 672) (i32.const 1) (i32.const 680)))
        (unreachable)))
    (if (i32.eq (local.get $first) (i32.const 103)) ;; 'g'
      (then
        (drop (call $grpc_call (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))))
    (i32.const 0))

  ;; A reply body becomes request header x-call-body and the request resumes;
  ;; a failed call (no headers) is answered 503.
  (func (export "proxy_on_http_call_response") (param $ctx i32) (param $token i32) (param $nh i32) (param $size i32) (param $nt i32)
    (if (i32.eqz (local.get $nh))
      (then
        (drop (call $local_response (i32.const 503) (i32.const 0) (i32.const 0)
          (i32.const 440) (i32.const 11) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return)))
    (drop (call $get_buffer (i32.const 4) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4)))
    (drop (call $add_header (i32.const 0) (i32.const 424) (i32.const 11) (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (drop (call $continue_stream (i32.const 0))))

  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header (i32.const 2) (i32.const 456) (i32.const 16) (i32.const 472) (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
