using QrOrleans.Gateway;

var app = GatewayApp.Create(args);
app.Run();

/// <summary>Entry point; visible to tests.</summary>
public partial class Program;
