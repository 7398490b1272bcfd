// Body of Kratos's web_hook call to kratos-gate's POST /hooks/kratos: the identity the flow
// is about. kratos-gate matches its id, verifiable and recovery addresses and the
// configured trait paths (blocklist.email_traits) against the blocklist.
function(ctx) {
  identity: ctx.identity,
}
