"""wrk scripts for bench_e2e.py: a restaurant's day and a barbershop's, as request mixes.

``run_wrk(script, args, base, seconds, conns, cpus)`` runs ``wrk -t1 -c<conns>`` with one
of the Lua scripts below (``RESTAURANT_LUA``, ``BARBERSHOP_LUA``) and returns requests,
req/s, wrk's latency percentiles (its HDR histogram: every request, reads and writes) and
the script's own counts of the writes it sent. Script arguments are ``key=value`` strings:

restaurant (``docs/examples/restaurant``):
  orgs=org-a,org-b,...       tenants; each request picks one uniformly
  orders=540 today=481       seeded order numbers 1..orders; today's start at ``today``
  order_today=0.8            share of order reads among today's orders (the rest: any order)
  phones=120 hot_phones=30   seeded customers +1-555-1000..; 70 % of balance reads hit the first hot_phones
  days=2026-01-20,...        seeded business days for the billing summary
  summary_today=0.8          share of summaries asked for today (where the run's payments land;
                             the rest: one of ``days``)
  patch=org/ord-00529,...    seeded active orders the updates change (never paid by the load)
  mix=profile:12,lite:12,... weights of the request kinds:
      profile  GET /orgs/{org}/profile                      (profile and menu)
      lite     GET /orgs/{org}/profile/lite
      active   GET /orgs/{org}/orders/active
      order    GET /orgs/{org}/orders/{id}
      balance  GET /orgs/{org}/customers/{phone}/balance
      summary  GET /orgs/{org}/billing/summary[?day=...]
      update   PATCH /orgs/{org}/orders/{id} {"table": ...} (a seeded active order)
      create   POST /orgs/{org}/orders                      (1-3 items, a customer 70 % of the time)
      pay      POST /orgs/{org}/payments {"order_id": a created order, "method": "card"}
               (the created orders are read from the 201 answers; none waiting: a create)

barbershop (``docs/examples/barbershop``):
  barbers=3 services=6 dates=2024-05-13,...  weeks=2024-05-13,...  ranges=START/END,...
  book_dates=2024-07-01,...  offset=N        bookings walk (barber, slot, day) from offset N:
                                             no two bookings of a run (or of two runs with
                                             offsets far apart) ask for the same slot
  mix=slots:30,week:12,...:
      slots     GET /barbers/{b}/slots?date=...[&service_id=...]
      week      GET /barbers/{b}/week?start=...
      services  GET /services
      settings  GET /settings
      revenue   GET /analytics/revenue?start=...&end=...
      clients   GET /analytics/clients?start=...&end=...
      dashboard GET /dashboard?date=...
      book      POST /bookings (30-minute service, a seeded client)
      pay       POST /payments for a booking this run created (none waiting: a booking)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

_COMMON_LUA = r"""
local mix_names, mix_cum, mix_total = {}, {}, 0
local A = {}
n_reads, n_update, n_create, n_pay, n_pay_fallback, n_created_seen = 0, 0, 0, 0, 0, 0
local queue, qhead, qtail = {}, 1, 0

local function split(s, sep)
  local out = {}
  if s == nil or s == "" then return out end
  for part in string.gmatch(s, "([^" .. sep .. "]+)") do out[#out + 1] = part end
  return out
end

local function parse_args(args)
  for _, a in ipairs(args) do
    local k, v = string.match(a, "^([%w_]+)=(.*)$")
    if k then A[k] = v end
  end
  for _, item in ipairs(split(A.mix, ",")) do
    local name, w = string.match(item, "^([%w_]+):([%d%.]+)$")
    mix_total = mix_total + tonumber(w)
    mix_names[#mix_names + 1] = name
    mix_cum[#mix_cum + 1] = mix_total
  end
end

local function pick_kind()
  local r = math.random() * mix_total
  for i = 1, #mix_cum do
    if r <= mix_cum[i] then return mix_names[i] end
  end
  return mix_names[#mix_names]
end

local function push(item) qtail = qtail + 1; queue[qtail] = item end
local function pop()
  if qhead > qtail then return nil end
  local item = queue[qhead]; queue[qhead] = nil; qhead = qhead + 1
  return item
end

local threads = {}
setup = function(thread) threads[#threads + 1] = thread end

done = function(summary, latency, requests)
  local c = {reads = 0, update = 0, create = 0, pay = 0, pay_fallback = 0, created_seen = 0}
  for _, t in ipairs(threads) do
    c.reads = c.reads + (t:get("n_reads") or 0)
    c.update = c.update + (t:get("n_update") or 0)
    c.create = c.create + (t:get("n_create") or 0)
    c.pay = c.pay + (t:get("n_pay") or 0)
    c.pay_fallback = c.pay_fallback + (t:get("n_pay_fallback") or 0)
    c.created_seen = c.created_seen + (t:get("n_created_seen") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "reads": %d, "updates": %d, "creates": %d, "pays": %d, ' ..
    '"pay_fallbacks": %d, "created_seen": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, c.reads, c.update, c.create, c.pay, c.pay_fallback, c.created_seen))
end
"""

RESTAURANT_LUA = _COMMON_LUA + r"""
local orgs, days, patch = {}, {}, {}
local orders, today, phones, hot = 540, 481, 120, 30
local order_today, summary_today = 0.8, 0.8
local json_hdr = {["Content-Type"] = "application/json"}
local seq = 0

init = function(args)
  parse_args(args)
  orgs = split(A.orgs, ",")
  days = split(A.days, ",")
  patch = split(A.patch, ",")
  orders = tonumber(A.orders or "540")
  today = tonumber(A.today or "481")
  phones = tonumber(A.phones or "120")
  hot = tonumber(A.hot_phones or "30")
  order_today = tonumber(A.order_today or "0.8")
  summary_today = tonumber(A.summary_today or "0.8")
  math.randomseed(tonumber(A.seed or "1"))
end

local function phone(i) return string.format("+1-555-%04d", 1000 + i) end

local function create(org)
  n_create = n_create + 1
  local items = {}
  for k = 1, math.random(1, 3) do
    items[#items + 1] = string.format('{"item_id":"m%03d","qty":%d}', math.random(1, 12), math.random(1, 3))
  end
  local customer = ""
  if math.random() < 0.7 then customer = string.format(',"customer_phone":"%s"', phone(math.random(0, phones - 1))) end
  local body = '{"items":[' .. table.concat(items, ",") .. ']' .. customer .. ',"table":"T' .. math.random(1, 20) .. '"}'
  return wrk.format("POST", "/orgs/" .. org .. "/orders", json_hdr, body)
end

request = function()
  local kind = pick_kind()
  local org = orgs[math.random(#orgs)]
  if kind == "profile" then
    n_reads = n_reads + 1
    return wrk.format("GET", "/orgs/" .. org .. "/profile")
  elseif kind == "lite" then
    n_reads = n_reads + 1
    return wrk.format("GET", "/orgs/" .. org .. "/profile/lite")
  elseif kind == "active" then
    n_reads = n_reads + 1
    return wrk.format("GET", "/orgs/" .. org .. "/orders/active")
  elseif kind == "order" then
    n_reads = n_reads + 1
    local id
    if math.random() < order_today then id = math.random(today, orders) else id = math.random(1, orders) end
    return wrk.format("GET", string.format("/orgs/%s/orders/ord-%05d", org, id))
  elseif kind == "balance" then
    n_reads = n_reads + 1
    local i
    if math.random() < 0.7 then i = math.random(0, hot - 1) else i = math.random(0, phones - 1) end
    return wrk.format("GET", "/orgs/" .. org .. "/customers/" .. phone(i) .. "/balance")
  elseif kind == "summary" then
    n_reads = n_reads + 1
    if #days > 0 and math.random() >= summary_today then
      return wrk.format("GET", "/orgs/" .. org .. "/billing/summary?day=" .. days[math.random(#days)])
    end
    return wrk.format("GET", "/orgs/" .. org .. "/billing/summary")
  elseif kind == "update" and #patch > 0 then
    n_update = n_update + 1
    seq = seq + 1
    local target = patch[math.random(#patch)]
    local o, id = string.match(target, "^(.-)/(.*)$")
    return wrk.format("PATCH", "/orgs/" .. o .. "/orders/" .. id, json_hdr,
                      string.format('{"table":"L%d"}', seq))
  elseif kind == "pay" then
    local item = pop()
    if item == nil then
      n_pay_fallback = n_pay_fallback + 1
      return create(org)
    end
    n_pay = n_pay + 1
    local o, id = string.match(item, "^(.-)/(.*)$")
    return wrk.format("POST", "/orgs/" .. o .. "/payments", json_hdr,
                      '{"order_id":"' .. id .. '","method":"card"}')
  end
  return create(org)
end

response = function(status, headers, body)
  if status == 201 and not string.find(body, '"payment_id"', 1, true) then
    local org = string.match(body, '"org_id":"([^"]+)"')
    local id = string.match(body, '"order_id":"([^"]+)"')
    if org and id then
      n_created_seen = n_created_seen + 1
      push(org .. "/" .. id)
    end
  end
end
"""

BARBERSHOP_LUA = _COMMON_LUA + r"""
local dates, weeks, ranges, book_dates = {}, {}, {}, {}
local barbers, services, clients, offset, booked = 3, 6, 60, 0, 0
local json_hdr = {["Content-Type"] = "application/json"}
local SLOTS = 18  -- 09:00 .. 17:30 every 30 minutes

init = function(args)
  parse_args(args)
  dates = split(A.dates, ",")
  weeks = split(A.weeks, ",")
  ranges = split(A.ranges, ",")
  book_dates = split(A.book_dates, ",")
  barbers = tonumber(A.barbers or "3")
  services = tonumber(A.services or "6")
  clients = tonumber(A.clients or "60")
  offset = tonumber(A.offset or "0")
  math.randomseed(tonumber(A.seed or "1"))
end

local function book()
  n_create = n_create + 1
  local idx = offset + booked
  booked = booked + 1
  local barber = idx % barbers + 1
  local slot = math.floor(idx / barbers) % SLOTS
  local day = book_dates[(math.floor(idx / (barbers * SLOTS)) % #book_dates) + 1]
  local start = string.format("%02d:%02d", 9 + math.floor(slot / 2), (slot % 2) * 30)
  local body = string.format('{"barber_id":%d,"service_id":%d,"date":"%s","start":"%s","client_id":%d}',
                             barber, math.random(1, 2), day, start, math.random(1, clients))
  return wrk.format("POST", "/bookings", json_hdr, body)
end

request = function()
  local kind = pick_kind()
  if kind == "slots" then
    n_reads = n_reads + 1
    local path = string.format("/barbers/%d/slots?date=%s", math.random(barbers), dates[math.random(#dates)])
    if math.random() < 0.5 then path = path .. "&service_id=" .. math.random(services) end
    return wrk.format("GET", path)
  elseif kind == "week" then
    n_reads = n_reads + 1
    return wrk.format("GET", string.format("/barbers/%d/week?start=%s", math.random(barbers), weeks[math.random(#weeks)]))
  elseif kind == "services" then
    n_reads = n_reads + 1
    return wrk.format("GET", "/services")
  elseif kind == "settings" then
    n_reads = n_reads + 1
    return wrk.format("GET", "/settings")
  elseif kind == "revenue" or kind == "clients" then
    n_reads = n_reads + 1
    local s, e = string.match(ranges[math.random(#ranges)], "^(.-)/(.*)$")
    return wrk.format("GET", "/analytics/" .. kind .. "?start=" .. s .. "&end=" .. e)
  elseif kind == "dashboard" then
    n_reads = n_reads + 1
    return wrk.format("GET", "/dashboard?date=" .. dates[math.random(#dates)])
  elseif kind == "pay" then
    local id = pop()
    if id == nil then
      n_pay_fallback = n_pay_fallback + 1
      return book()
    end
    n_pay = n_pay + 1
    return wrk.format("POST", "/payments", json_hdr,
                      string.format('{"booking_id":%s,"amount_cents":3000,"tip_cents":300,"method":"card"}', id))
  end
  return book()
end

response = function(status, headers, body)
  if status == 201 and string.find(body, '"status":"booked"', 1, true) then
    local id = string.match(body, '"id":%s*(%d+)')
    if id then
      n_created_seen = n_created_seen + 1
      push(id)
    end
  end
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *cmd]
    return cmd


def run_wrk(script: str, args: list[str], base: str, seconds: float, conns: int,
            cpus: str | None) -> dict[str, Any]:
    """One wrk run; raises RuntimeError when wrk fails or prints no summary."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        path = fh.name
    try:
        dur = max(1, round(seconds))
        cmd = pinned(["wrk", "-t1", f"-c{conns}", f"-d{dur}s", "--timeout", "10s", "-s", path, base,
                      "--", *args], cpus)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=dur + 30)
    finally:
        os.unlink(path)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    d = json.loads(line[len("WRKJSON "):])
    secs = d["duration_us"] / 1e6
    return {
        "requests": d["requests"],
        "seconds": round(secs, 3),
        "rps": round(d["requests"] / secs, 1) if secs else 0.0,
        "p50_us": d["p50_us"],
        "p90_us": d["p90_us"],
        "p99_us": d["p99_us"],
        "max_us": d["max_us"],
        "mean_us": d["mean_us"],
        "errors": d["connect"] + d["read"] + d["write"] + d["timeout"],
        "timeouts": d["timeout"],
        "non_2xx": d["status"],
        "writes": {"updates": d["updates"], "creates": d["creates"], "pays": d["pays"],
                   "pay_fallbacks": d["pay_fallbacks"]},
        "reads_sent": d["reads"],
    }
