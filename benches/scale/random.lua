-- wrk script: GET /auth/x with apikey k<i>; i random in [0, N) (env N), or always KEY_INDEX
-- when that is set (the one-key baseline pays the same Lua cost per request).
local counter = 0
function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
end

local n, fixed
function init(args)
    n = tonumber(os.getenv("N") or "1")
    fixed = os.getenv("KEY_INDEX")
    if fixed then fixed = tonumber(fixed) end
    math.randomseed(os.time() + 7919 * (id or 0))
end

function request()
    local i = fixed or math.random(0, n - 1)
    return wrk.format("GET", "/auth/x", { ["apikey"] = string.format("k%07d", i) })
end
