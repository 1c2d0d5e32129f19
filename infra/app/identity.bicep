// The reconciler's one identity: a user-assigned managed identity, so that its principal
// (and every role assignment made to it) survives a redeploy or a replaced Function App.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
