// The Event Grid system topic of one Azure subscription (Azure subscription events), with a
// system-assigned identity for identity-based delivery. A subscription has at most one system
// topic of this type: deploy this module once per target subscription.
param name string
param tags object

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

output name string = topic.name
output principalId string = topic.identity.principalId
