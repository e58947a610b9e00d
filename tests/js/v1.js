// @azure/cognitiveservices-personalizer (v1.0 API), used as its README shows, against
// the endpoint in argv[2] with the key in argv[3]. Prints one JSON object: what each
// call returned (or the error it threw), for tests/server/test_personalizer_js.py.
"use strict";
const { PersonalizerClient } = require("@azure/cognitiveservices-personalizer");
const { ApiKeyCredentials } = require("@azure/ms-rest-js");

const [endpoint, key, badKey] = process.argv.slice(2);
const credentials = (k) => new ApiKeyCredentials({ inHeader: { "Ocp-Apim-Subscription-Key": k } });
const client = new PersonalizerClient(credentials(key), endpoint);

const actions = [0, 1, 2, 3].map((i) => ({
  id: `a${i}`,
  features: [{ kind: String(i), price: i }],
}));
const contextFeatures = [{ user: { device: "ios" } }, { time: "morning" }];

function failure(err) {
  return { statusCode: err.statusCode, code: err.code, message: err.message,
           body: err.body };
}

function callback(fn) { // the client's callback form
  return new Promise((resolve, reject) =>
    fn((err, result) => (err ? reject(err) : resolve(result))));
}

async function main() {
  const out = {};
  const rank = await client.rank({ contextFeatures, actions, excludedActions: ["a2"],
                                   eventId: "js-v1-ev", deferActivation: true });
  out.rank = { ranking: rank.ranking, eventId: rank.eventId,
               rewardActionId: rank.rewardActionId, status: rank._response.status };
  const act = await client.events.activate("js-v1-ev");
  out.activate = { status: act._response.status };
  const rew = await client.events.reward("js-v1-ev", { value: 0.5 });
  out.reward = { status: rew._response.status };
  const again = await callback((cb) => client.rank({ contextFeatures, actions }, cb));
  out.rankCallback = { ranking: again.ranking, eventId: again.eventId,
                       rewardActionId: again.rewardActionId };
  await callback((cb) => client.events.reward(again.eventId, { value: 1 }, cb));
  try {
    await client.rank({ contextFeatures, actions: [] });
    out.rankNoActions = "no error";
  } catch (err) { out.rankNoActions = failure(err); }
  try {
    await new PersonalizerClient(credentials(badKey), endpoint).rank({ contextFeatures, actions });
    out.rankBadKey = "no error";
  } catch (err) { out.rankBadKey = failure(err); }
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n${JSON.stringify(failure(err))}\n`);
  process.exit(1);
});
