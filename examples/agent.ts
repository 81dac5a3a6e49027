/**
 * An agent-like client: creates a session, then posts the kind of programs a model writes in
 * "code mode" — transform records given as inputs, store aggregates with a tool, read them
 * back in a later run, and one run that hits a limit — printing each RunResult.
 *
 * It speaks only the wire contract (seed 004's RunRequest/RunResult) over HTTP, so it works
 * against any deployment:
 *
 *   npm start                              # in one terminal
 *   node examples/agent.ts [base-url]      # in another (SANDBOX_TOKEN if the server has one)
 *
 * @module
 */
import type { RunRequest, RunResult } from "../src/contract/types.ts";

/** One step of the flow and what came back. */
export interface AgentStep {
  title: string;
  request: RunRequest;
  result: RunResult;
}

const orders = [
  { id: 1, customer: "acme", sku: "bolt", quantity: 120, unit_price: 0.25 },
  { id: 2, customer: "globex", sku: "nut", quantity: 300, unit_price: 0.1 },
  { id: 3, customer: "acme", sku: "washer", quantity: 75, unit_price: 0.05 },
  { id: 4, customer: "initech", sku: "bolt", quantity: 10, unit_price: 0.25 },
  { id: 5, customer: "globex", sku: "bolt", quantity: 40, unit_price: 0.25 },
];

/** Runs the flow against `baseUrl`; answers every step. Throws on an HTTP error. */
export async function runAgentFlow(
  baseUrl: string,
  options: { token?: string; sessionId?: string; log?: (line: string) => void } = {},
): Promise<AgentStep[]> {
  const log = options.log ?? (() => {});
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(new URL(path, baseUrl), {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const payload = (await response.json()) as unknown;
    if (!response.ok)
      throw new Error(`${method} ${path}: HTTP ${response.status} ${JSON.stringify(payload)}`);
    return payload;
  };

  const session = (await call("POST", "/v1/sessions", {
    ...(options.sessionId ? { session_id: options.sessionId } : {}),
    language: "typescript",
  })) as { id: string };
  log(`session ${session.id}`);

  const request = (code: string, extra: Partial<RunRequest> = {}): RunRequest => ({
    session_id: session.id,
    language: "typescript",
    code,
    inputs: {},
    timeout_ms: null,
    limits: null,
    return_snapshot: false,
    validate_only: false,
    ...extra,
  });

  const plan: { title: string; request: RunRequest }[] = [
    {
      title: "transform the input records and store aggregates",
      request: request(
        `interface Order { id: number; customer: string; sku: string; quantity: number; unit_price: number }
const byCustomer = new Map<string, { orders: number; units: number; revenue: number }>();
for (const order of orders as Order[]) {
  const entry = byCustomer.get(order.customer) ?? { orders: 0, units: 0, revenue: 0 };
  entry.orders += 1;
  entry.units += order.quantity;
  entry.revenue = Math.round((entry.revenue + order.quantity * order.unit_price) * 100) / 100;
  byCustomer.set(order.customer, entry);
}
const summary = Object.fromEntries(byCustomer);
await kv_set("summary", summary);
await tools.kv_set("top_customer", [...byCustomer].sort((a, b) => b[1].revenue - a[1].revenue)[0]![0]);
console.log(\`stored \${byCustomer.size} customers\`);
summary`,
        { inputs: { orders } },
      ),
    },
    {
      title: "read the aggregates back in a later run",
      request: request(
        `const stored = await kv_get("summary") as Record<string, { revenue: number }>;
const top = await kv_get("top_customer");
({ top, total_revenue: Object.values(stored).reduce((sum, c) => sum + c.revenue, 0), keys: await kv_list() })`,
      ),
    },
    {
      title: "use a value defined two runs ago",
      request: request(`byCustomer.size`),
    },
    {
      title: "a runaway loop hits cpu_ms",
      request: request(`let spins = 0;\nwhile (true) { spins++ }`, { limits: { cpu_ms: 200 } }),
    },
    {
      title: "a mistake the model can fix from the span",
      request: request(
        `const rows = orders.filter((o) => o.quantity > 50);\nrows.map((o) => o.customr.toUpperCase())`,
        {
          inputs: { orders },
        },
      ),
    },
  ];

  const steps: AgentStep[] = [];
  for (const step of plan) {
    const result = (await call("POST", "/v1/runs", step.request)) as RunResult;
    steps.push({ ...step, result });
    log(`\n# ${step.title}\n${JSON.stringify(result, null, 2)}`);
  }
  await call("DELETE", `/v1/sessions/${session.id}`);
  return steps;
}

if (import.meta.main) {
  const baseUrl = process.argv[2] ?? `http://127.0.0.1:${process.env.PORT ?? 8787}`;
  const token = process.env.SANDBOX_TOKEN;
  await runAgentFlow(baseUrl, { ...(token ? { token } : {}), log: (line) => console.log(line) });
}
