// The `events` queue (drift events, docs/events.md): Event Grid delivers Azure subscription
// events and the Azure DevOps audit stream here. No sessions: the trigger maps each event to
// applications and sends the reconcile messages into their sessions. The reconciler receives
// through its namespace-wide Data Receiver role (servicebus.bicep); senders get Data Sender on
// this queue only (events-sender-role.bicep).
param serviceBusNamespaceName string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

// Events are worth little once old (the sweep repairs what they reported), so they expire
// after a day; an event that fails five times is dead-lettered for `dlq list --queue events`.
resource eventsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: 'events'
  properties: {
    requiresSession: false
    maxDeliveryCount: 5
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P1D'
    deadLetteringOnMessageExpiration: true
  }
}

output id string = eventsQueue.id
output name string = eventsQueue.name
