// Drift events from one target subscription: a resource group for its Event Grid system topic,
// the topic, Data Sender on the `events` queue for the topic's identity, then the event
// subscription (which Event Grid validates against that role, hence the order).
targetScope = 'subscription'

param location string
param tags object
param resourceToken string
@description('Where the events queue lives: the app\'s subscription id, resource group and namespace.')
param appSubscriptionId string
param appResourceGroupName string
param serviceBusNamespaceName string
param eventsQueueId string

resource topicGroup 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: 'rg-wif-events-${resourceToken}'
  location: location
  tags: tags
}

module topic 'events-topic.bicep' = {
  name: 'wif-events-topic-${resourceToken}'
  scope: topicGroup
  params: {
    name: 'evgt-wif-${uniqueString(subscription().id, resourceToken)}'
    tags: tags
  }
}

module senderRole 'events-sender-role.bicep' = {
  name: 'wif-events-sender-${uniqueString(subscription().id, resourceToken)}'
  scope: resourceGroup(appSubscriptionId, appResourceGroupName)
  params: {
    serviceBusNamespaceName: serviceBusNamespaceName
    senderPrincipalId: topic.outputs.principalId
  }
}

module eventSubscription 'events-topic-subscription.bicep' = {
  name: 'wif-events-subscription-${resourceToken}'
  scope: topicGroup
  params: {
    topicName: topic.outputs.name
    eventsQueueId: eventsQueueId
  }
  dependsOn: [
    senderRole
  ]
}
