// One Vercel AI SDK agent run, traced by the OpenTelemetry JS SDK and exported over OTLP/HTTP
// (protobuf) to the gateway: `node vercel_ai_trace.mjs [GATEWAY_URL]` (else $GATEWAY_URL, else
// http://127.0.0.1:4318). A mock language model asks for one tool call, then answers, so the
// trace holds ai.generateText > ai.generateText.doGenerate, ai.toolCall, ai.generateText.doGenerate.
// Prints {"trace_id", "model", "text", "exported_spans"} as JSON; exits 1 if any export failed.
import { diag, DiagConsoleLogger, DiagLogLevel, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import { generateText, stepCountIs, tool } from "ai";
import { MockLanguageModelV2 } from "ai/test";
import { z } from "zod";

export const MODEL_ID = "mock-gpt-weave";

const gatewayUrl = (process.argv[2] ?? process.env.GATEWAY_URL ?? "http://127.0.0.1:4318")
  .replace(/\/+$/, "");

// The OTLP exporter reports failures only through diag and the export callback: surface both.
diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);
const exportOutcome = { exported: 0, failures: [] };
const otlp = new OTLPTraceExporter({ url: `${gatewayUrl}/v1/traces` });
const countingExporter = {
  export(spans, done) {
    otlp.export(spans, (result) => {
      if (result.code === 0) exportOutcome.exported += spans.length;
      else exportOutcome.failures.push(String(result.error ?? `code ${result.code}`));
      done(result);
    });
  },
  shutdown: () => otlp.shutdown(),
  forceFlush: () => otlp.forceFlush(),
};

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: "vercel-ai-weather-agent" }),
  spanProcessors: [new BatchSpanProcessor(countingExporter)],
});
provider.register();

const usage = (input, output) => ({
  inputTokens: input,
  outputTokens: output,
  totalTokens: input + output,
});

// Node's SDK stamps a span's start in whole milliseconds (its end is that start plus the
// duration): each step takes a few, so that no two steps start in the same millisecond and
// their order shows in their start times.
const pause = () => new Promise((resolve) => setTimeout(resolve, 5));

const steps = [
  {
    content: [
      {
        type: "tool-call",
        toolCallId: "call-weather-1",
        toolName: "weather",
        input: JSON.stringify({ city: "Paris" }),
      },
    ],
    finishReason: "tool-calls",
    usage: usage(31, 12),
    warnings: [],
  },
  {
    content: [{ type: "text", text: "It is 18°C and sunny in Paris." }],
    finishReason: "stop",
    usage: usage(58, 11),
    warnings: [],
  },
];
let step = 0;

const model = new MockLanguageModelV2({
  provider: "mock-provider",
  modelId: MODEL_ID,
  doGenerate: async () => {
    await pause();
    return steps[step++];
  },
});

const weather = tool({
  description: "The current weather in a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => {
    await pause();
    return { city, celsius: 18, sky: "sunny" };
  },
});

const tracer = trace.getTracer("vercel-ai-gateway-test");
let traceId;
const result = await tracer.startActiveSpan("weather-agent-request", async (span) => {
  traceId = span.spanContext().traceId;
  try {
    return await generateText({
      model,
      system: "You are a weather assistant.",
      prompt: "What is the weather in Paris?",
      tools: { weather },
      stopWhen: stepCountIs(3),
      experimental_telemetry: { isEnabled: true, functionId: "weather-agent", tracer },
    });
  } finally {
    span.end();
  }
});

// shutdown() flushes the batch processor and waits for the exporter: nothing is left unsent.
await provider.shutdown();
console.log(
  JSON.stringify({
    trace_id: traceId,
    model: MODEL_ID,
    text: result.text,
    exported_spans: exportOutcome.exported,
  }),
);
if (exportOutcome.failures.length > 0) {
  console.error(`OTLP export failed: ${exportOutcome.failures.join("; ")}`);
  process.exit(1);
}
